"""Exercise 11 is a written design answer: the instructor grades answer.md by hand with the rubric
in solution.md. The autograder only lists it (as "manual") and says whether there is an answer."""
TITLE = "Design: a distillation experiment plan with a decision rule"
MANUAL = True
POINTS = 10
STUDENT_FILE = "answer.md"
SOLUTION_FILE = "solution.md"
