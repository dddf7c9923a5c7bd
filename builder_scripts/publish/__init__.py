"""Publishing: Parquet shards and the dataset card, and the push to the Hub."""
