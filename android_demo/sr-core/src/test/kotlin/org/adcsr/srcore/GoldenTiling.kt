package org.adcsr.srcore

import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

/** The golden test's Kotlin half: `GoldenTilingKt IN.f32 H W TILE OVERLAP BLEND FIX OUT.u8`
 * reads a 3×H×W float32 (little-endian) LR image, upscales it with [ToyConvModel] through
 * [Tiler] and writes the 8-bit result (planar 3 × 4H × 4W bytes) for Python to compare. */
fun main(args: Array<String>) {
    val (input, h, w, tile, overlap, blend, fix, output) = args
    val bytes = File(input).readBytes()
    val floats = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
    val lr = FloatImage(3, h.toInt(), w.toInt())
    floats.get(lr.data)
    val tiler = Tiler(ToyConvModel(tile.toInt()), overlap.toInt(), Blend.valueOf(blend.uppercase()))
    val sr = tiler.upscale(lr, ColorFix.parse(fix))
    File(output).writeBytes(ByteArray(sr.data.size) { Pixels.toByte(sr.data[it]).toByte() })
}

private operator fun <T> Array<T>.component6() = this[5]
private operator fun <T> Array<T>.component7() = this[6]
private operator fun <T> Array<T>.component8() = this[7]
