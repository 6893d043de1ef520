from rnnfast.tasks import Task


class SequencesTask(Task):
    name = "sequences"
