"""What every HTTP request goes through: access, rate limits, hardening, request logs."""
