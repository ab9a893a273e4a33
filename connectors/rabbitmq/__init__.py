"""Amazon MQ for RabbitMQ: the `rabbitmq` source."""
