"""Twilio voice: webhooks, TwiML, the event journal and the call projection."""
