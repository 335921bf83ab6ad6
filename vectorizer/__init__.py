"""Vectorizer: an event-sourced vector database on Kafka, hnswlib and SQL."""

__version__ = "0.1.0"
