"""Exercise 5 is a written design answer: the instructor grades answer.md by hand with the rubric
in solution.md. The autograder only lists it (as "manual") and says whether there is an answer.
It has no checks, hidden or public; this file holds its settings and ships to students."""
TITLE = "Design: the teacher that reads the model's own score"
MANUAL = True
POINTS = 10
STUDENT_FILE = "answer.md"
SOLUTION_FILE = "solution.md"
