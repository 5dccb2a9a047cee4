"""Sources (lines of business) and their customer records, stored through the vault."""
