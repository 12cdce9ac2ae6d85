"""One module per `f2b-study` command; each exposes `register(subparsers)`."""
