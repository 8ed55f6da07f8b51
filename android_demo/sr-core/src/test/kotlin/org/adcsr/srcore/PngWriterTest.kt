package org.adcsr.srcore

import java.io.ByteArrayInputStream
import java.io.ByteArrayOutputStream
import java.nio.file.Files
import javax.imageio.ImageIO
import kotlin.math.abs
import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue

class PngWriterTest {
    @Test
    fun aStreamedPngDecodesToTheSamePixels() {
        val w = 300
        val h = 70
        val argb = IntArray(w * h) { k -> val x = k % w; val y = k / w; (0xFF shl 24) or ((x % 256) shl 16) or ((y * 3) shl 8) or ((x + y) % 256) }
        val bytes = ByteArrayOutputStream()
        PngWriter(bytes, w, h).use { png -> for (y in 0 until h step 16) png.writeRows(argb.copyOfRange(y * w, minOf(h, y + 16) * w)) }
        val img = ImageIO.read(ByteArrayInputStream(bytes.toByteArray()))
        assertEquals(w, img.width)
        assertEquals(h, img.height)
        for (y in 0 until h) for (x in 0 until w) assertEquals(argb[y * w + x], img.getRGB(x, y))
    }

    @Test
    fun closingEarlyIsAnError() {
        val png = PngWriter(ByteArrayOutputStream(), 4, 4)
        png.writeRows(IntArray(8))
        assertFailsWith<IllegalStateException> { png.close() }
    }

    @Test
    fun streamedUpscaleEqualsTheWholeImageAndAdainNearlySo() {
        val lr = FloatImage(3, 41, 37).also { img -> for (k in img.data.indices) img.data[k] = ((k * 37) % 101) / 100f }
        val tiler = Tiler(ToyConvModel(16), 6)
        val spill = Files.createTempDirectory("spill").toFile()
        for (fix in listOf(ColorFix.NONE, ColorFix.ADAIN)) {
            val whole = Pixels.toArgb(tiler.upscale(lr, fix))
            val bytes = ByteArrayOutputStream()
            StreamedUpscale(tiler, 4).toPng(ImageRows(lr), bytes, fix, spill)
            val img = ImageIO.read(ByteArrayInputStream(bytes.toByteArray()))
            var worst = 0
            for (y in 0 until img.height) for (x in 0 until img.width) {
                val a = whole[y * img.width + x]
                val b = img.getRGB(x, y)
                for (shift in listOf(0, 8, 16)) worst = maxOf(worst, abs(((a shr shift) and 0xFF) - ((b shr shift) and 0xFF)))
            }
            assertTrue(if (fix == ColorFix.NONE) worst == 0 else worst <= 1, "$fix: $worst")
        }
        assertEquals(0, spill.listFiles()!!.size)  // the spill file is gone
    }
}
