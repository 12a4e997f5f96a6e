from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateRunRequest(_message.Message):
    __slots__ = ("project", "name", "config_json", "tags", "run_id", "parent_run_id", "fork_step")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    FORK_STEP_FIELD_NUMBER: _ClassVar[int]
    project: str
    name: str
    config_json: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    run_id: str
    parent_run_id: str
    fork_step: int
    def __init__(self, project: _Optional[str] = ..., name: _Optional[str] = ..., config_json: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., run_id: _Optional[str] = ..., parent_run_id: _Optional[str] = ..., fork_step: _Optional[int] = ...) -> None: ...

class CreateRunResponse(_message.Message):
    __slots__ = ("run_id", "resumed")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    resumed: bool
    def __init__(self, run_id: _Optional[str] = ..., resumed: _Optional[bool] = ...) -> None: ...

class ScalarBatch(_message.Message):
    __slots__ = ("names", "name_index", "steps", "values", "wall_times_us")
    NAMES_FIELD_NUMBER: _ClassVar[int]
    NAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    WALL_TIMES_US_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    name_index: _containers.RepeatedScalarFieldContainer[int]
    steps: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    wall_times_us: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, names: _Optional[_Iterable[str]] = ..., name_index: _Optional[_Iterable[int]] = ..., steps: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ..., wall_times_us: _Optional[_Iterable[int]] = ...) -> None: ...

class TensorStatistics(_message.Message):
    __slots__ = ("numel", "mean", "std", "min", "max", "l2", "abs_max", "nan_count", "inf_count", "zero_frac", "histogram", "quantiles")
    NUMEL_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    L2_FIELD_NUMBER: _ClassVar[int]
    ABS_MAX_FIELD_NUMBER: _ClassVar[int]
    NAN_COUNT_FIELD_NUMBER: _ClassVar[int]
    INF_COUNT_FIELD_NUMBER: _ClassVar[int]
    ZERO_FRAC_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    QUANTILES_FIELD_NUMBER: _ClassVar[int]
    numel: int
    mean: float
    std: float
    min: float
    max: float
    l2: float
    abs_max: float
    nan_count: int
    inf_count: int
    zero_frac: float
    histogram: _containers.RepeatedScalarFieldContainer[int]
    quantiles: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, numel: _Optional[int] = ..., mean: _Optional[float] = ..., std: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., l2: _Optional[float] = ..., abs_max: _Optional[float] = ..., nan_count: _Optional[int] = ..., inf_count: _Optional[int] = ..., zero_frac: _Optional[float] = ..., histogram: _Optional[_Iterable[int]] = ..., quantiles: _Optional[_Iterable[float]] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("name", "step", "dtype", "shape", "total_bytes", "offset", "data", "wall_time_us", "stats", "stats_only")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    WALL_TIME_US_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    STATS_ONLY_FIELD_NUMBER: _ClassVar[int]
    name: str
    step: int
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    total_bytes: int
    offset: int
    data: bytes
    wall_time_us: int
    stats: TensorStatistics
    stats_only: bool
    def __init__(self, name: _Optional[str] = ..., step: _Optional[int] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., total_bytes: _Optional[int] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., wall_time_us: _Optional[int] = ..., stats: _Optional[_Union[TensorStatistics, _Mapping]] = ..., stats_only: _Optional[bool] = ...) -> None: ...

class WriteRequest(_message.Message):
    __slots__ = ("writer_id", "sequence", "run_id", "scalars", "tensor")
    WRITER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SCALARS_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    writer_id: str
    sequence: int
    run_id: str
    scalars: ScalarBatch
    tensor: Tensor
    def __init__(self, writer_id: _Optional[str] = ..., sequence: _Optional[int] = ..., run_id: _Optional[str] = ..., scalars: _Optional[_Union[ScalarBatch, _Mapping]] = ..., tensor: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class WriteResponse(_message.Message):
    __slots__ = ("sequence", "points", "duplicate")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    points: int
    duplicate: bool
    def __init__(self, sequence: _Optional[int] = ..., points: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class FinishRunRequest(_message.Message):
    __slots__ = ("run_id", "status")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    status: str
    def __init__(self, run_id: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class FinishRunResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AddConditionRequest(_message.Message):
    __slots__ = ("run_id", "project", "series", "predicate", "hold", "label", "predict")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    HOLD_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PREDICT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    project: str
    series: str
    predicate: str
    hold: int
    label: str
    predict: Prediction
    def __init__(self, run_id: _Optional[str] = ..., project: _Optional[str] = ..., series: _Optional[str] = ..., predicate: _Optional[str] = ..., hold: _Optional[int] = ..., label: _Optional[str] = ..., predict: _Optional[_Union[Prediction, _Mapping]] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("final_step", "lr_series", "above", "baseline_run_id", "every", "level")
    FINAL_STEP_FIELD_NUMBER: _ClassVar[int]
    LR_SERIES_FIELD_NUMBER: _ClassVar[int]
    ABOVE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EVERY_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    final_step: int
    lr_series: str
    above: float
    baseline_run_id: str
    every: int
    level: float
    def __init__(self, final_step: _Optional[int] = ..., lr_series: _Optional[str] = ..., above: _Optional[float] = ..., baseline_run_id: _Optional[str] = ..., every: _Optional[int] = ..., level: _Optional[float] = ...) -> None: ...

class AddConditionResponse(_message.Message):
    __slots__ = ("condition_id",)
    CONDITION_ID_FIELD_NUMBER: _ClassVar[int]
    condition_id: str
    def __init__(self, condition_id: _Optional[str] = ...) -> None: ...

class RemoveConditionRequest(_message.Message):
    __slots__ = ("condition_id",)
    CONDITION_ID_FIELD_NUMBER: _ClassVar[int]
    condition_id: str
    def __init__(self, condition_id: _Optional[str] = ...) -> None: ...

class RemoveConditionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListConditionsRequest(_message.Message):
    __slots__ = ("run_id", "project")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    project: str
    def __init__(self, run_id: _Optional[str] = ..., project: _Optional[str] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("condition_id", "run_id", "project", "series", "predicate", "hold", "label", "created_at_us")
    CONDITION_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    HOLD_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_US_FIELD_NUMBER: _ClassVar[int]
    condition_id: str
    run_id: str
    project: str
    series: str
    predicate: str
    hold: int
    label: str
    created_at_us: int
    def __init__(self, condition_id: _Optional[str] = ..., run_id: _Optional[str] = ..., project: _Optional[str] = ..., series: _Optional[str] = ..., predicate: _Optional[str] = ..., hold: _Optional[int] = ..., label: _Optional[str] = ..., created_at_us: _Optional[int] = ...) -> None: ...

class ListConditionsResponse(_message.Message):
    __slots__ = ("conditions",)
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    def __init__(self, conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("run_id", "after_seq")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    after_seq: int
    def __init__(self, run_id: _Optional[str] = ..., after_seq: _Optional[int] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("event_id", "seq", "run_id", "condition_id", "label", "series", "step", "value", "time_us", "detected_at_us", "predicted", "predicted_lo", "predicted_hi", "threshold", "final_step")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CONDITION_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TIME_US_FIELD_NUMBER: _ClassVar[int]
    DETECTED_AT_US_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_LO_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_HI_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FINAL_STEP_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    seq: int
    run_id: str
    condition_id: str
    label: str
    series: str
    step: int
    value: float
    time_us: int
    detected_at_us: int
    predicted: float
    predicted_lo: float
    predicted_hi: float
    threshold: float
    final_step: int
    def __init__(self, event_id: _Optional[str] = ..., seq: _Optional[int] = ..., run_id: _Optional[str] = ..., condition_id: _Optional[str] = ..., label: _Optional[str] = ..., series: _Optional[str] = ..., step: _Optional[int] = ..., value: _Optional[float] = ..., time_us: _Optional[int] = ..., detected_at_us: _Optional[int] = ..., predicted: _Optional[float] = ..., predicted_lo: _Optional[float] = ..., predicted_hi: _Optional[float] = ..., threshold: _Optional[float] = ..., final_step: _Optional[int] = ...) -> None: ...
