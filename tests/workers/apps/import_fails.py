"""An app whose import fails, like one with a missing dependency."""
import missing_dependency_for_pit_tests  # noqa: F401
