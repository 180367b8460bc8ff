# Post-deploy smoke test of the API's sign-in (azure.yaml postdeploy); Windows twin of
# check-auth.sh. Fails the deploy if the audit API answers 2xx to a caller without credentials,
# or to one that forges X-MS-CLIENT-PRINCIPAL (claiming the reader role API_READER_ROLE).
$ErrorActionPreference = 'Stop'
$base = $env:SERVICE_BASTION_AUDIT_BASE_URL
if (-not $base) { throw 'SERVICE_BASTION_AUDIT_BASE_URL is not set' }
$role = if ($env:API_READER_ROLE) { $env:API_READER_ROLE } else { 'BastionAudit.Read' }
$claims = @{
    auth_typ = 'aad'; name_typ = 'name'; role_typ = 'roles'
    claims   = @(@{ typ = 'roles'; val = $role }, @{ typ = 'name'; val = 'forged' })
} | ConvertTo-Json -Compress -Depth 5
$forged = [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes($claims))

function Get-Status([string]$Url, [hashtable]$Headers) {
    $code = 0
    foreach ($attempt in 1..6) {
        try {
            $response = Invoke-WebRequest -Uri $Url -Headers $Headers -MaximumRedirection 0 `
                -TimeoutSec 30 -SkipHttpErrorCheck -ErrorAction Stop
            $code = [int]$response.StatusCode
        }
        catch { $code = 0 }
        if ($code -ne 0 -and $code -lt 500) { break }
        Start-Sleep -Seconds 10
    }
    return $code
}

$failed = $false
foreach ($route in 'activity', 'alerts', 'report') {
    $cases = @{
        anonymous = @{ Accept = 'application/json' }
        forged    = @{
            Accept                       = 'application/json'
            'X-MS-CLIENT-PRINCIPAL'      = $forged
            'X-MS-CLIENT-PRINCIPAL-IDP'  = 'aad'
            'X-MS-CLIENT-PRINCIPAL-NAME' = 'forged'
        }
    }
    foreach ($mode in $cases.Keys) {
        $code = Get-Status "$base/api/$route" $cases[$mode]
        if ($code -in 401, 403, 302) { Write-Host "check-auth: /api/$route ($mode): $code, as expected" }
        elseif ($code -ge 200 -and $code -lt 300) {
            Write-Error "check-auth: /api/$route ($mode) answered ${code}: the audit data is open" -ErrorAction Continue
            $failed = $true
        }
        else { Write-Warning "check-auth: /api/$route ($mode) answered $code; could not verify sign-in" }
    }
}
if ($failed) { exit 1 }
