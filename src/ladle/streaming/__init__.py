"""The stream process: Kafka topics → stream feature views → online and offline stores."""
