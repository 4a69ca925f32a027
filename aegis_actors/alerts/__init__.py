"""Alert delivery: channels (Slack webhook, SMTP, SMS/phone webhooks), a courier thread with
retries, routing by level (SPEC 6.2), escalation (SPEC 6.3) and de-duplication."""

from aegis_actors.alerts.channels import Delivery, DeliveryError
from aegis_actors.alerts.courier import Courier
from aegis_actors.alerts.desk import AlertDesk

__all__ = ["AlertDesk", "Courier", "Delivery", "DeliveryError"]
