"""SQLAlchemy 2 models, one module per entity."""
from helpdesk.models.base import Base, UTCDateTime
from helpdesk.models.call import Call
from helpdesk.models.enquiry import Enquiry, ReferenceCounter
from helpdesk.models.event import TwilioEvent
from helpdesk.models.user import User

__all__ = ["Base", "UTCDateTime", "Call", "Enquiry", "ReferenceCounter", "TwilioEvent", "User"]
