"""Bounds of ``fmnist serve``'s settings that the command line checks too, without FastAPI."""

# The most --max-upload (Settings.max_upload) may be: a request's body is held in memory while it
# is read, several requests at once (Settings.concurrency), so the limit must leave the machine its
# memory. 1 GiB (1GB and 1GiB both pass) is 100 times the default and holds the most files a request
# may carry (Settings.max_files, 32) as phone photos.
MAX_UPLOAD_LIMIT = 1024 ** 3
