# Stand-ins for the parts of sd-scripts' `library` package that networks/resize_lora.py uses.
