#pragma once

namespace tollgate {

/// 128-bit intermediate for money and rate arithmetic that must not overflow int64.
__extension__ typedef __int128 int128;

} // namespace tollgate
