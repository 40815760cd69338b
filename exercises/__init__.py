"""RelCourse exercises: short graded tasks on the metrics, losses and features of the course.

Each exercise lives in its own folder (ex01_pnr, ...). `python -m exercises.grade` grades them;
see exercises/README.md.
"""
