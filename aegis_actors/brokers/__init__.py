"""Brokers behind one interface: the paper simulator now, an Alpaca-style REST broker later."""

from aegis_actors.brokers.base import (
    OPEN_STATUSES,
    Account,
    Ack,
    Broker,
    BrokerError,
    BrokerFill,
    BrokerOrder,
    BrokerPosition,
    OpenOrder,
    OrderStatus,
    OrderType,
    Side,
)
from aegis_actors.brokers.paper import PaperBroker

__all__ = [
    "OPEN_STATUSES",
    "Account",
    "Ack",
    "Broker",
    "BrokerError",
    "BrokerFill",
    "BrokerOrder",
    "BrokerPosition",
    "OpenOrder",
    "OrderStatus",
    "OrderType",
    "PaperBroker",
    "Side",
]
