"""An app that takes longer to import than any test's startup_timeout."""
import time

time.sleep(30)
