from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Null(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NULL: _ClassVar[Null]
NULL: Null

class ValueType(_message.Message):
    __slots__ = ()
    class Enum(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        INVALID: _ClassVar[ValueType.Enum]
        BYTES: _ClassVar[ValueType.Enum]
        STRING: _ClassVar[ValueType.Enum]
        INT32: _ClassVar[ValueType.Enum]
        INT64: _ClassVar[ValueType.Enum]
        DOUBLE: _ClassVar[ValueType.Enum]
        FLOAT: _ClassVar[ValueType.Enum]
        BOOL: _ClassVar[ValueType.Enum]
        UNIX_TIMESTAMP: _ClassVar[ValueType.Enum]
        BYTES_LIST: _ClassVar[ValueType.Enum]
        STRING_LIST: _ClassVar[ValueType.Enum]
        INT32_LIST: _ClassVar[ValueType.Enum]
        INT64_LIST: _ClassVar[ValueType.Enum]
        DOUBLE_LIST: _ClassVar[ValueType.Enum]
        FLOAT_LIST: _ClassVar[ValueType.Enum]
        BOOL_LIST: _ClassVar[ValueType.Enum]
        UNIX_TIMESTAMP_LIST: _ClassVar[ValueType.Enum]
        NULL: _ClassVar[ValueType.Enum]
        MAP: _ClassVar[ValueType.Enum]
        MAP_LIST: _ClassVar[ValueType.Enum]
        BYTES_SET: _ClassVar[ValueType.Enum]
        STRING_SET: _ClassVar[ValueType.Enum]
        INT32_SET: _ClassVar[ValueType.Enum]
        INT64_SET: _ClassVar[ValueType.Enum]
        DOUBLE_SET: _ClassVar[ValueType.Enum]
        FLOAT_SET: _ClassVar[ValueType.Enum]
        BOOL_SET: _ClassVar[ValueType.Enum]
        UNIX_TIMESTAMP_SET: _ClassVar[ValueType.Enum]
        JSON: _ClassVar[ValueType.Enum]
        JSON_LIST: _ClassVar[ValueType.Enum]
        STRUCT: _ClassVar[ValueType.Enum]
        STRUCT_LIST: _ClassVar[ValueType.Enum]
        UUID: _ClassVar[ValueType.Enum]
        TIME_UUID: _ClassVar[ValueType.Enum]
        UUID_LIST: _ClassVar[ValueType.Enum]
        TIME_UUID_LIST: _ClassVar[ValueType.Enum]
        UUID_SET: _ClassVar[ValueType.Enum]
        TIME_UUID_SET: _ClassVar[ValueType.Enum]
        VALUE_LIST: _ClassVar[ValueType.Enum]
        VALUE_SET: _ClassVar[ValueType.Enum]
        DECIMAL: _ClassVar[ValueType.Enum]
        DECIMAL_LIST: _ClassVar[ValueType.Enum]
        DECIMAL_SET: _ClassVar[ValueType.Enum]
        SCALAR_MAP: _ClassVar[ValueType.Enum]
        ZONED_TIMESTAMP: _ClassVar[ValueType.Enum]
    INVALID: ValueType.Enum
    BYTES: ValueType.Enum
    STRING: ValueType.Enum
    INT32: ValueType.Enum
    INT64: ValueType.Enum
    DOUBLE: ValueType.Enum
    FLOAT: ValueType.Enum
    BOOL: ValueType.Enum
    UNIX_TIMESTAMP: ValueType.Enum
    BYTES_LIST: ValueType.Enum
    STRING_LIST: ValueType.Enum
    INT32_LIST: ValueType.Enum
    INT64_LIST: ValueType.Enum
    DOUBLE_LIST: ValueType.Enum
    FLOAT_LIST: ValueType.Enum
    BOOL_LIST: ValueType.Enum
    UNIX_TIMESTAMP_LIST: ValueType.Enum
    NULL: ValueType.Enum
    MAP: ValueType.Enum
    MAP_LIST: ValueType.Enum
    BYTES_SET: ValueType.Enum
    STRING_SET: ValueType.Enum
    INT32_SET: ValueType.Enum
    INT64_SET: ValueType.Enum
    DOUBLE_SET: ValueType.Enum
    FLOAT_SET: ValueType.Enum
    BOOL_SET: ValueType.Enum
    UNIX_TIMESTAMP_SET: ValueType.Enum
    JSON: ValueType.Enum
    JSON_LIST: ValueType.Enum
    STRUCT: ValueType.Enum
    STRUCT_LIST: ValueType.Enum
    UUID: ValueType.Enum
    TIME_UUID: ValueType.Enum
    UUID_LIST: ValueType.Enum
    TIME_UUID_LIST: ValueType.Enum
    UUID_SET: ValueType.Enum
    TIME_UUID_SET: ValueType.Enum
    VALUE_LIST: ValueType.Enum
    VALUE_SET: ValueType.Enum
    DECIMAL: ValueType.Enum
    DECIMAL_LIST: ValueType.Enum
    DECIMAL_SET: ValueType.Enum
    SCALAR_MAP: ValueType.Enum
    ZONED_TIMESTAMP: ValueType.Enum
    def __init__(self) -> None: ...

class Value(_message.Message):
    __slots__ = ("bytes_val", "string_val", "int32_val", "int64_val", "double_val", "float_val", "bool_val", "unix_timestamp_val", "bytes_list_val", "string_list_val", "int32_list_val", "int64_list_val", "double_list_val", "float_list_val", "bool_list_val", "unix_timestamp_list_val", "null_val")
    BYTES_VAL_FIELD_NUMBER: _ClassVar[int]
    STRING_VAL_FIELD_NUMBER: _ClassVar[int]
    INT32_VAL_FIELD_NUMBER: _ClassVar[int]
    INT64_VAL_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VAL_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VAL_FIELD_NUMBER: _ClassVar[int]
    BOOL_VAL_FIELD_NUMBER: _ClassVar[int]
    UNIX_TIMESTAMP_VAL_FIELD_NUMBER: _ClassVar[int]
    BYTES_LIST_VAL_FIELD_NUMBER: _ClassVar[int]
    STRING_LIST_VAL_FIELD_NUMBER: _ClassVar[int]
    INT32_LIST_VAL_FIELD_NUMBER: _ClassVar[int]
    INT64_LIST_VAL_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_LIST_VAL_FIELD_NUMBER: _ClassVar[int]
    FLOAT_LIST_VAL_FIELD_NUMBER: _ClassVar[int]
    BOOL_LIST_VAL_FIELD_NUMBER: _ClassVar[int]
    UNIX_TIMESTAMP_LIST_VAL_FIELD_NUMBER: _ClassVar[int]
    NULL_VAL_FIELD_NUMBER: _ClassVar[int]
    bytes_val: bytes
    string_val: str
    int32_val: int
    int64_val: int
    double_val: float
    float_val: float
    bool_val: bool
    unix_timestamp_val: int
    bytes_list_val: BytesList
    string_list_val: StringList
    int32_list_val: Int32List
    int64_list_val: Int64List
    double_list_val: DoubleList
    float_list_val: FloatList
    bool_list_val: BoolList
    unix_timestamp_list_val: Int64List
    null_val: Null
    def __init__(self, bytes_val: _Optional[bytes] = ..., string_val: _Optional[str] = ..., int32_val: _Optional[int] = ..., int64_val: _Optional[int] = ..., double_val: _Optional[float] = ..., float_val: _Optional[float] = ..., bool_val: _Optional[bool] = ..., unix_timestamp_val: _Optional[int] = ..., bytes_list_val: _Optional[_Union[BytesList, _Mapping]] = ..., string_list_val: _Optional[_Union[StringList, _Mapping]] = ..., int32_list_val: _Optional[_Union[Int32List, _Mapping]] = ..., int64_list_val: _Optional[_Union[Int64List, _Mapping]] = ..., double_list_val: _Optional[_Union[DoubleList, _Mapping]] = ..., float_list_val: _Optional[_Union[FloatList, _Mapping]] = ..., bool_list_val: _Optional[_Union[BoolList, _Mapping]] = ..., unix_timestamp_list_val: _Optional[_Union[Int64List, _Mapping]] = ..., null_val: _Optional[_Union[Null, str]] = ...) -> None: ...

class BytesList(_message.Message):
    __slots__ = ("val",)
    VAL_FIELD_NUMBER: _ClassVar[int]
    val: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, val: _Optional[_Iterable[bytes]] = ...) -> None: ...

class StringList(_message.Message):
    __slots__ = ("val",)
    VAL_FIELD_NUMBER: _ClassVar[int]
    val: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, val: _Optional[_Iterable[str]] = ...) -> None: ...

class Int32List(_message.Message):
    __slots__ = ("val",)
    VAL_FIELD_NUMBER: _ClassVar[int]
    val: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, val: _Optional[_Iterable[int]] = ...) -> None: ...

class Int64List(_message.Message):
    __slots__ = ("val",)
    VAL_FIELD_NUMBER: _ClassVar[int]
    val: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, val: _Optional[_Iterable[int]] = ...) -> None: ...

class DoubleList(_message.Message):
    __slots__ = ("val",)
    VAL_FIELD_NUMBER: _ClassVar[int]
    val: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, val: _Optional[_Iterable[float]] = ...) -> None: ...

class FloatList(_message.Message):
    __slots__ = ("val",)
    VAL_FIELD_NUMBER: _ClassVar[int]
    val: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, val: _Optional[_Iterable[float]] = ...) -> None: ...

class BoolList(_message.Message):
    __slots__ = ("val",)
    VAL_FIELD_NUMBER: _ClassVar[int]
    val: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, val: _Optional[_Iterable[bool]] = ...) -> None: ...

class RepeatedValue(_message.Message):
    __slots__ = ("val",)
    VAL_FIELD_NUMBER: _ClassVar[int]
    val: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, val: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...
