"""Sources: the sticker crawl (Tenor API v2 client), film acquisition and local folders."""
