"""The dashboard's modal screens: help, and the veto confirmation."""
