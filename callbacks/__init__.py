"""The callback queue: the three-hour rule, attempts, warnings, breaches and the agents page."""
