"""The core every stage shares: the settings (read once), the domain's words (`domain`), the
catalogue of rules and their limits (`catalog`), resource ids, safe text. Pure; imports
nothing else of `shared`."""
