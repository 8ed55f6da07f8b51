package org.adcsr.srcore

/** An image as planar float32 (channels × height × width, row-major), values nominally in [0, 1]:
 * the layout the exported student reads and writes (NCHW with N = 1). */
class FloatImage(val channels: Int, val height: Int, val width: Int, val data: FloatArray = FloatArray(channels * height * width)) {
    init {
        require(channels > 0 && height > 0 && width > 0) { "image sides must be positive, got ${channels}×${height}×$width" }
        require(data.size == channels * height * width) { "data holds ${data.size} values, not ${channels}×${height}×$width" }
    }

    operator fun get(c: Int, y: Int, x: Int): Float = data[(c * height + y) * width + x]

    operator fun set(c: Int, y: Int, x: Int, v: Float) {
        data[(c * height + y) * width + x] = v
    }

    /** Rows [top, top + rows) and columns [left, left + cols) as a new image. */
    fun crop(top: Int, left: Int, rows: Int, cols: Int): FloatImage {
        require(top >= 0 && left >= 0 && top + rows <= height && left + cols <= width) {
            "crop ${rows}×$cols at ($top, $left) leaves the ${height}×$width image"
        }
        val out = FloatImage(channels, rows, cols)
        for (c in 0 until channels) for (y in 0 until rows) {
            System.arraycopy(data, (c * height + top + y) * width + left, out.data, (c * rows + y) * cols, cols)
        }
        return out
    }
}
