from ladle.server._proto.feast.serving import ServingService_pb2 as _ServingService_pb2
from ladle.server._proto.feast.types import Value_pb2 as _Value_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PushRequest(_message.Message):
    __slots__ = ("features", "stream_feature_view", "allow_registry_cache", "to", "typed_features")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class TypedFeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _Value_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_Value_pb2.Value, _Mapping]] = ...) -> None: ...
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    STREAM_FEATURE_VIEW_FIELD_NUMBER: _ClassVar[int]
    ALLOW_REGISTRY_CACHE_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    TYPED_FEATURES_FIELD_NUMBER: _ClassVar[int]
    features: _containers.ScalarMap[str, str]
    stream_feature_view: str
    allow_registry_cache: bool
    to: str
    typed_features: _containers.MessageMap[str, _Value_pb2.Value]
    def __init__(self, features: _Optional[_Mapping[str, str]] = ..., stream_feature_view: _Optional[str] = ..., allow_registry_cache: _Optional[bool] = ..., to: _Optional[str] = ..., typed_features: _Optional[_Mapping[str, _Value_pb2.Value]] = ...) -> None: ...

class PushResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: bool
    def __init__(self, status: _Optional[bool] = ...) -> None: ...

class WriteToOnlineStoreRequest(_message.Message):
    __slots__ = ("features", "feature_view_name", "allow_registry_cache", "typed_features")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class TypedFeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _Value_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_Value_pb2.Value, _Mapping]] = ...) -> None: ...
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_VIEW_NAME_FIELD_NUMBER: _ClassVar[int]
    ALLOW_REGISTRY_CACHE_FIELD_NUMBER: _ClassVar[int]
    TYPED_FEATURES_FIELD_NUMBER: _ClassVar[int]
    features: _containers.ScalarMap[str, str]
    feature_view_name: str
    allow_registry_cache: bool
    typed_features: _containers.MessageMap[str, _Value_pb2.Value]
    def __init__(self, features: _Optional[_Mapping[str, str]] = ..., feature_view_name: _Optional[str] = ..., allow_registry_cache: _Optional[bool] = ..., typed_features: _Optional[_Mapping[str, _Value_pb2.Value]] = ...) -> None: ...

class WriteToOnlineStoreResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: bool
    def __init__(self, status: _Optional[bool] = ...) -> None: ...
