package org.adcsr.srcore

import java.io.DataInputStream
import java.io.DataOutputStream
import java.io.File
import java.io.OutputStream

/**
 * A photo upscaled into a PNG stream in bounded memory: one strip of tiles and one band of
 * output rows at a time, as `adcsr.core.tiling.upscale_bands`. AdaIN needs the whole SR image's
 * per-channel mean and std before the first band can be corrected, so uncorrected bands wait in
 * a temporary file in [spillDir] while the statistics accumulate (the model runs once). The
 * wavelet fix low-passes across band borders at every level: it is only offered for images that
 * fit in memory ([Tiler.upscale]).
 */
class StreamedUpscale(private val tiler: Tiler, private val scale: Int) {
    fun toPng(
        source: RowSource,
        out: OutputStream,
        fix: ColorFix,
        spillDir: File,
        progress: (Int, Int) -> Unit = { _, _ -> },
        cancelled: () -> Boolean = { false },
    ) {
        require(fix != ColorFix.WAVELET) {
            "the wavelet colour fix needs the whole image at once; streamed upscaling supports adain or none"
        }
        val png = PngWriter(out, source.width * scale, source.height * scale)
        if (fix == ColorFix.NONE) {
            tiler.bands(source, progress, cancelled) { band -> png.writeRows(Pixels.toArgb(clamped(band))) }
            png.close()
            return
        }
        val spill = File.createTempFile("sr-bands", ".f32", spillDir)
        try {
            val sums = DoubleArray(3)
            val squares = DoubleArray(3)
            var count = 0L
            val heights = ArrayList<Int>()
            DataOutputStream(spill.outputStream().buffered(1 shl 16)).use { dump ->
                tiler.bands(source, progress, cancelled) { band ->
                    val n = band.height * band.width
                    for (c in 0 until 3) for (k in c * n until (c + 1) * n) {
                        val v = band.data[k].toDouble()
                        sums[c] += v
                        squares[c] += v * v
                    }
                    count += n
                    heights += band.height
                    for (v in band.data) dump.writeFloat(v)
                }
            }
            val srStats = (0 until 3).map { c ->
                val mean = sums[c] / count
                mean to Math.sqrt(maxOf(0.0, (squares[c] - sums[c] * mean) / maxOf(count - 1, 1)))
            }
            val coeff = ColorFix.adainCoefficients(srStats, lrImage(source))
            val w = source.width * scale
            DataInputStream(spill.inputStream().buffered(1 shl 16)).use { back ->
                for (rows in heights) {
                    val band = FloatImage(3, rows, w)
                    for (k in band.data.indices) band.data[k] = back.readFloat()
                    val n = rows * w
                    for (c in 0 until 3) {
                        val (gain, offset) = coeff[c]
                        for (k in c * n until (c + 1) * n) band.data[k] = band.data[k] * gain + offset
                    }
                    png.writeRows(Pixels.toArgb(clamped(band)))
                }
            }
            png.close()
        } finally {
            spill.delete()
        }
    }

    /** The LR image for its statistics (LR pixels are 1/scale² of the SR's). */
    private fun lrImage(source: RowSource): FloatImage = source.rows(0, source.height)

    private fun clamped(band: FloatImage): FloatImage {
        for (k in band.data.indices) band.data[k] = band.data[k].coerceIn(0f, 1f)
        return band
    }
}
