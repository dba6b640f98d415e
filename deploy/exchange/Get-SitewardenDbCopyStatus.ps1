<#
.SYNOPSIS
    Prints the mailbox-database copy status of a DAG as JSON for sitewarden.

.DESCRIPTION
    Projects Get-MailboxDatabaseCopyStatus (plus ActivationPreference from Get-MailboxDatabase)
    to explicit strings, integers and ISO-8601 UTC dates, so the output is identical on Windows
    PowerShell 5.1 and PowerShell 7 and through remoting (where enums would otherwise become
    integers or {"value":..,"Value":..} objects and dates /Date(ms)/).

    Run it where the Exchange Management Shell cmdlets are available: in the Exchange Management
    Shell, or in a session that imported them (Connect-ExchangeServer, or an implicit remoting
    session). The sitewarden agent runs it as its [[dbcopy]] command, or a scheduled task POSTs
    its output to the agent:

        $json = & .\Get-SitewardenDbCopyStatus.ps1 -Dag DAG1
        Invoke-RestMethod -Method Post -Uri http://agent:9464/api/v1/dbcopy/dag1 `
            -Headers @{ Authorization = "Bearer $env:SITEWARDEN_PUSH_TOKEN" } `
            -ContentType 'application/json' -Body $json

.PARAMETER Dag
    The DatabaseAvailabilityGroup whose copies to report. Default: every database.

.PARAMETER ConnectionUri
    Optional: an Exchange PowerShell endpoint (e.g. http://ex01.corp.example.com/PowerShell/)
    to import the cmdlets from when they are not already loaded.
#>
[CmdletBinding()]
param(
    [string] $Dag,
    [string] $ConnectionUri
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 2.0

if (-not (Get-Command Get-MailboxDatabaseCopyStatus -ErrorAction SilentlyContinue)) {
    if (-not $ConnectionUri) {
        throw 'Get-MailboxDatabaseCopyStatus is not available: run in the Exchange Management Shell or pass -ConnectionUri.'
    }
    $session = New-PSSession -ConfigurationName Microsoft.Exchange -ConnectionUri $ConnectionUri -Authentication Kerberos
    Import-PSSession $session -CommandName Get-MailboxDatabaseCopyStatus, Get-MailboxDatabase, Get-DatabaseAvailabilityGroup -DisableNameChecking | Out-Null
}

function ConvertTo-IsoUtc($value) {
    if ($null -eq $value) { return $null }
    return ([datetime]$value).ToUniversalTime().ToString('o')
}

function ConvertTo-Text($value) {
    if ($null -eq $value) { return $null }
    return $value.ToString()
}

$databases = if ($Dag) {
    $members = (Get-DatabaseAvailabilityGroup -Identity $Dag).Servers | ForEach-Object { $_.ToString() }
    Get-MailboxDatabase | Where-Object { $_.MasterServerOrAvailabilityGroup.ToString() -eq $Dag -or $members -contains $_.Server.ToString() }
} else {
    Get-MailboxDatabase
}

$copies = foreach ($db in $databases) {
    # ActivationPreference is a list of server/number pairs; index it by server name.
    $preference = @{}
    foreach ($pair in $db.ActivationPreference) {
        $preference[$pair.Key.ToString().ToUpperInvariant()] = [int]$pair.Value
    }
    foreach ($copy in (Get-MailboxDatabaseCopyStatus -Identity $db.Name)) {
        $server = ConvertTo-Text $copy.MailboxServer
        [ordered]@{
            Name                  = ConvertTo-Text $copy.Name
            DatabaseName          = ConvertTo-Text $copy.DatabaseName
            MailboxServer         = $server
            Status                = ConvertTo-Text $copy.Status
            ActiveDatabaseCopy    = ConvertTo-Text $copy.ActiveDatabaseCopy
            ActivationSuspended   = [bool]$copy.ActivationSuspended
            CopyQueueLength       = [int64]$copy.CopyQueueLength
            ReplayQueueLength     = [int64]$copy.ReplayQueueLength
            ContentIndexState     = ConvertTo-Text $copy.ContentIndexState
            LastInspectedLogTime  = ConvertTo-IsoUtc $copy.LastInspectedLogTime
            ActivationPreference  = $preference[$server.ToUpperInvariant()]
            ErrorMessage          = ConvertTo-Text $copy.ErrorMessage
        }
    }
}

# Always an array, even with one copy (ConvertTo-Json would unwrap it; the parser accepts both).
ConvertTo-Json -InputObject @($copies) -Depth 3 -Compress
