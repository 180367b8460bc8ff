"""Azure Functions entry points (Python v2 model): triggers and bindings only.

All logic lives in the `shared` package; see docs/how-it-works.md. The HTTP routes are
anonymous at the Functions level because App Service Authentication (Entra ID) stands in front
of them and the app checks the signed-in caller's role itself (`shared.answer.auth`).
"""

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from shared import functions
from shared.answer import http as api
from shared.core.settings import CONNECTION, LOGS_CONTAINER, Settings

app = func.FunctionApp()
_SOURCE = {
    "EventGrid": func.BlobSource.EVENT_GRID,
    "LogsAndContainerScan": func.BlobSource.LOGS_AND_CONTAINER_SCAN,
}[Settings.load().blob_trigger_source]


@app.function_name("ingest_blob")
@app.blob_trigger(
    arg_name="client", path=LOGS_CONTAINER + "/{name}", connection=CONNECTION, source=_SOURCE
)
def ingest_blob(client: blob.BlobClient) -> None:
    functions.on_blob(client)


@app.function_name("sweep_recent_blobs")
@app.timer_trigger(arg_name="timer", schedule="%SWEEP_SCHEDULE%", run_on_startup=False)
def sweep_recent_blobs(timer: func.TimerRequest) -> None:
    functions.on_sweep(timer.past_due)


@app.function_name("redeliver_alerts")
@app.timer_trigger(arg_name="timer", schedule="%ALERT_RETRY_SCHEDULE%", run_on_startup=False)
def redeliver_alerts(timer: func.TimerRequest) -> None:
    functions.on_redeliver()


@app.function_name("check_health")
@app.timer_trigger(arg_name="timer", schedule="%HEALTH_SCHEDULE%", run_on_startup=False)
def check_health(timer: func.TimerRequest) -> None:
    functions.on_health(timer.past_due)


@app.function_name("send_digest")
@app.timer_trigger(arg_name="timer", schedule="%DIGEST_SCHEDULE%", run_on_startup=False)
def send_digest(timer: func.TimerRequest) -> None:
    functions.on_digest(timer.past_due)


@app.function_name("expire_old_data")
@app.timer_trigger(arg_name="timer", schedule="%RETENTION_SCHEDULE%", run_on_startup=False)
def expire_old_data(timer: func.TimerRequest) -> None:
    functions.on_retention(timer.past_due)


@app.function_name("http_activity")
@app.route(route="activity", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def http_activity(req: func.HttpRequest) -> func.HttpResponse:
    return api.activity(req, functions.storage())


@app.function_name("http_sessions")
@app.route(route="sessions", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def http_sessions(req: func.HttpRequest) -> func.HttpResponse:
    return api.sessions(req, functions.storage())


@app.function_name("http_alerts")
@app.route(route="alerts", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def http_alerts(req: func.HttpRequest) -> func.HttpResponse:
    return api.alerts(req, functions.storage())


@app.function_name("http_report")
@app.route(route="report", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def http_report(req: func.HttpRequest) -> func.HttpResponse:
    return api.report_page(req, functions.storage())


@app.function_name("http_status")
@app.route(route="status", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def http_status(req: func.HttpRequest) -> func.HttpResponse:
    return api.status(req, functions.storage())


@app.function_name("http_erase")
@app.route(route="erase", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def http_erase(req: func.HttpRequest) -> func.HttpResponse:
    return api.erase(req, functions.storage())
