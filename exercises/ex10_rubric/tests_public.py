"""Exercise 10 is a written design answer: the instructor grades answer.md by hand with the rubric
in solution.md. The autograder only lists it (as "manual") and says whether there is an answer."""
TITLE = "Design: a versioned labelling rubric, its disputed cases and its roll-out"
MANUAL = True
POINTS = 10
STUDENT_FILE = "answer.md"
SOLUTION_FILE = "solution.md"
