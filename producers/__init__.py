"""How events enter the log: the producer library and topic management."""

from producers.producer import VectorProducer, WriteToken

__all__ = ["VectorProducer", "WriteToken"]
