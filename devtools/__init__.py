"""Developer tooling: the local storage emulator, the sample logs and the demo.

Not part of the function app (`.funcignore` leaves this folder out of the deployment); the app's
own command line is `python -m shared`.
"""
