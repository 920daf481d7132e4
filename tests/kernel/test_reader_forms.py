"""The two reading forms besides ``read()``: ``for record in reader:`` and
``reader.poll(callback, timeout)``, on a reader the Collection owns."""

import struct
import threading

from pybpf.dsl import RingBuf, Struct, collection_spec, raw_tracepoint, u64
from pybpf.loader import Collection


class Record(Struct):
    value: u64


records = RingBuf(size=4096 * 4)


@raw_tracepoint("sys_enter")
def emit(p, ctx):
    with records.reserve(Record) as record:
        record.value = ctx.args[0]


def _emit(loaded, *values):
    for value in values:
        loaded.programs.emit.test_run(ctx=struct.pack("<QQ", value, 0))


def test_poll_hands_each_record_to_the_callback(no_leaks):
    with Collection(collection_spec([emit])) as loaded:
        reader = loaded.reader(records, Record)
        _emit(loaded, 1, 2, 3)
        seen = []
        assert reader.poll(lambda record: seen.append(record.value), timeout=0) == 3
        assert seen == [1, 2, 3]
        assert reader.poll(seen.append, timeout=0) == 0


def test_iteration_yields_records_until_the_collection_closes(no_leaks):
    loaded = Collection(collection_spec([emit]))
    reader = loaded.reader(records, Record)
    _emit(loaded, 7, 8)
    values = []
    for record in reader:
        values.append(record.value)
        if len(values) == 2:
            break
    assert values == [7, 8]
    closer = threading.Thread(target=loaded.close)
    closer.start()
    assert list(reader) == []             # a blocked iteration ends when the reader closes
    closer.join()
    assert loaded.closed
