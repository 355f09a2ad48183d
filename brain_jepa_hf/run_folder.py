"""The layout of a `brain-jepa pretrain` output folder: what its files and folders are called."""

CHECKPOINT_PREFIX = "step-"
STATE_FILE = "trainer_state.json"
LOG_FILE = "pretraining_log.jsonl"  # one JSON record per logging step
RUN_SETTINGS_FILE = "run_settings.json"  # the settings that decide the result, and their fingerprint
FINAL_STAGING = ".final.tmp"
