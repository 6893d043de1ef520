"""Training tasks, one per module (dependency, mnist, addition), and their data loaders."""
