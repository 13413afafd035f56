"""torch's AsyncCheckpointer over ckptw's write_async.

torch's ``AsyncCheckpointer(checkpoint_stager, checkpoint_process, reader)`` stages on a
thread (a D2H copy into cached buffers) and writes in a subprocess with torch.save. ckptw's
``CheckpointWriter.write_async`` does both: it returns once every tensor is captured into
its (pinned) staging memory, then writes, votes and commits on its own thread. These two
small parts plug it in: the stager hands the state dict through untouched, and the
process's ``write`` is ``write_async``, so the stage future AsyncCheckpointer returns is done
when save() returns (the capture is done too) and the write future completes at the commit.
"""

import concurrent.futures


class PassThroughStager:
    """``stage(state_dict)`` returns the state dict itself: ckptw captures it in write_async."""

    def stage(self, state_dict, **kwargs):
        return state_dict

    def close(self):
        pass


class WriteAsyncProcess:
    """``write(state_dict, path, **kwargs)`` is ``writer.write_async(path, state_dict, **kwargs)``."""

    def __init__(self, writer):
        self.writer = writer

    def write(self, state_dict, path, **kwargs) -> concurrent.futures.Future:
        if isinstance(state_dict, concurrent.futures.Future):
            state_dict = state_dict.result()
        return self.writer.write_async(path, state_dict, **kwargs)

    def close(self):
        self.writer.close()


def async_checkpointer(writer, reader):
    """``torch.distributed.checkpoint._experimental.checkpointer.AsyncCheckpointer`` over ckptw.

    ``save(path, state_dict)`` returns ``(stage_future, write_future)``: the first is done once
    the tensors are captured (the model may change), the second once the checkpoint is committed.
    """
    from torch.distributed.checkpoint._experimental.checkpointer import AsyncCheckpointer

    return AsyncCheckpointer(PassThroughStager(), WriteAsyncProcess(writer), reader)
