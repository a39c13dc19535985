"""Kafka as every role uses it: topic names, client configuration, topic creation and the batch producer."""
