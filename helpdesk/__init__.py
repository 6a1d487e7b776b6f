"""Help-desk telephony and contact SLA monitor."""
from helpdesk.app import create_app

__all__ = ["create_app"]
