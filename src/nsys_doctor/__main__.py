"""`python -m nsys_doctor`: the same entry point as the `nsys-doctor` console script (cli.console_main)."""
from .cli import console_main

console_main()
