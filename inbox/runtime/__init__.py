"""Process plumbing: forked workers, files only their owner reads, logging."""
