"""Tasks: GLUE (classification, regression) and SQuAD v1.1 (extractive QA).

A task is YAML data (conf/task/*.yaml, typed by `TaskConfig`); the code here is one module per
task kind, registered in `TASK_KINDS`. `load_task_data` reads the files from the data directory
(or the hub when no data directory is set) and returns `datasets.Dataset` splits.
"""

from suite.tasks import glue, squad  # noqa: E402,F401  (registers)
from suite.tasks.base import TASK_KINDS, TaskData, check_task_files, load_task_data

__all__ = ["TASK_KINDS", "TaskData", "check_task_files", "load_task_data"]
