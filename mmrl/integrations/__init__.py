"""Optional bridges to other toolkits (each module imports its toolkit and fails clearly without it)."""
