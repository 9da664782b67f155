"""Publishing: the Hub-shaped folder, the load-back check, the Hub push."""
