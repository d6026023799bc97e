"""One blueprint per resource; views parse, call the service and return."""
