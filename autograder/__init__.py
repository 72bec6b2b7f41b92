"""autograder: release assignments and grade a class; the `cnnkit` command line."""
