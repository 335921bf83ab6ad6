"""Generated from Qdrant's .proto files by vectorizer.grpc_api.generate."""
