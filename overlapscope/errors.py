"""The one exception type the command line turns into a single line and exit code 2."""

from __future__ import annotations


class BadInput(Exception):
    """Input we cannot analyse honestly: the message names the file and what is wrong with it."""

    def __init__(self, source: object, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")
