"""SQLAlchemy 2 models, one module per entity."""
from helpdesk.models.audit import AuditEntry
from helpdesk.models.base import Base, UTCDateTime
from helpdesk.models.call import Call
from helpdesk.models.callback import Callback, CallbackAttempt, CallbackNotice, SchedulerLease
from helpdesk.models.email import EmailAcknowledgement, ImapMailboxState, InboundEmail
from helpdesk.models.enquiry import Enquiry, ReferenceCounter
from helpdesk.models.event import TwilioEvent
from helpdesk.models.lookup import TwilioLookup
from helpdesk.models.restore import Restore
from helpdesk.models.user import (AccessToken, FormerPhone, PackBuild, PasswordLink, RecoveryCode, SignInFailure,
                                  User)

__all__ = [
    "AccessToken", "AuditEntry", "Base", "EmailAcknowledgement", "FormerPhone", "ImapMailboxState", "InboundEmail", "PackBuild", "UTCDateTime", "Call", "Callback", "CallbackAttempt", "CallbackNotice", "SchedulerLease", "Enquiry", "ReferenceCounter", "Restore", "TwilioEvent", "TwilioLookup", "PasswordLink", "RecoveryCode", "SignInFailure", "User"]
