"""What the tests and the benchmarks share: the sensitive test model and the in-process server.

Not part of the installed packages (the service image never holds it); the tests and benchmarks
import it from the checkout's root."""
