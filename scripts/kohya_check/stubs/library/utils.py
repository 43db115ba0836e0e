# Stand-in for sd-scripts' library/utils.py: logging setup is not needed for the check.
def setup_logging(args=None, log_level=None, reset=False):
    pass
