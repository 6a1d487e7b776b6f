"""The email channel: inbound mail (SendGrid Inbound Parse, IMAP) and its acknowledgements."""
