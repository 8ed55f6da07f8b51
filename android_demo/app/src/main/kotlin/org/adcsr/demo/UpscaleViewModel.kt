package org.adcsr.demo

import android.app.Application
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.net.Uri
import android.os.SystemClock
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.viewModelScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.update
import kotlinx.coroutines.isActive
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import org.adcsr.demo.backends.Backends
import org.adcsr.demo.backends.UnsupportedBackend
import org.adcsr.srcore.Backend
import org.adcsr.srcore.Blend
import org.adcsr.srcore.ColorFix
import org.adcsr.srcore.ContractException
import org.adcsr.srcore.ModelContract
import org.adcsr.srcore.PngWriter
import org.adcsr.srcore.Pixels
import org.adcsr.srcore.SrModel
import org.adcsr.srcore.StreamedUpscale
import org.adcsr.srcore.Tiler
import java.io.File
import kotlin.coroutines.cancellation.CancellationException

data class UiState(
    val backends: List<Backend> = emptyList(),
    val refused: Map<String, String> = emptyMap(),  // backend id → why it cannot run here
    val backendId: String? = null,
    val colorFix: ColorFix = ColorFix.ADAIN,
    val photo: Uri? = null,
    val before: Bitmap? = null,
    val after: Bitmap? = null,
    val progress: Float? = null,  // non-null while upscaling
    val info: String? = null,
    val message: String? = null,  // one clear error or notice, shown in a dialog
    val result: File? = null,
)

/** Loads the models, runs the upscale off the main thread with progress and cancel, and saves. */
class UpscaleViewModel(app: Application) : AndroidViewModel(app) {
    private val _state = MutableStateFlow(UiState())
    val state: StateFlow<UiState> = _state
    private var contract: ModelContract? = null
    private var modelDir: File? = null
    private var model: SrModel? = null
    private var job: Job? = null

    init {
        viewModelScope.launch(Dispatchers.IO) {
            try {
                val (c, dir) = ModelAssets(app).load()
                contract = c
                modelDir = dir
                val (fastest, refused) = Backends.openFastest(c, dir)
                model = fastest
                _state.update { s ->
                    s.copy(backends = Backends.byPreference(c), refused = refused, colorFix = c.colorFix,
                        backendId = c.backends.first { it.label == fastest.name }.id)
                }
            } catch (e: ContractException) {
                _state.update { it.copy(message = e.message) }
            } catch (e: UnsupportedBackend) {
                _state.update { it.copy(message = "No backend can run on this phone: ${e.message}") }
            }
        }
    }

    fun choose(backendId: String) = viewModelScope.launch(Dispatchers.IO) {
        val c = contract ?: return@launch
        val backend = c.backends.first { it.id == backendId }
        try {
            val opened = Backends.open(backend, c, modelDir!!)
            model?.close()
            model = opened
            _state.update { it.copy(backendId = backendId) }
        } catch (e: UnsupportedBackend) {
            _state.update { it.copy(message = e.message, refused = it.refused + (backendId to (e.message ?: ""))) }
        }
    }

    fun chooseColorFix(fix: ColorFix) = _state.update { it.copy(colorFix = fix) }

    fun pick(uri: Uri) = viewModelScope.launch(Dispatchers.IO) {
        try {
            val preview = PhotoRows.preview(getApplication(), uri, PREVIEW_SIDE)
            _state.update { it.copy(photo = uri, before = preview, after = null, result = null, info = null) }
        } catch (e: Exception) {
            _state.update { it.copy(message = "Cannot open this photo: ${e.message}") }
        }
    }

    fun upscale() {
        val s = _state.value
        val uri = s.photo ?: return
        val c = contract ?: return
        val m = model ?: return
        job = viewModelScope.launch(Dispatchers.Default) {
            _state.update { it.copy(progress = 0f, info = null) }
            val app = getApplication<Application>()
            val out = File(app.cacheDir, "result.png")
            val started = SystemClock.elapsedRealtime()
            try {
                val tiler = Tiler(m, c.overlap, Blend.COSINE)
                PhotoRows(app, uri).use { rows ->
                    val tmp = File(app.cacheDir, "result.png.part")
                    tmp.outputStream().buffered(1 shl 16).use { stream ->
                        val progress = { done: Int, total: Int -> _state.update { it.copy(progress = done.toFloat() / total) } }
                        val cancelled = { !isActive }
                        if (s.colorFix == ColorFix.WAVELET) {
                            // the wavelet fix needs the whole SR image in memory: small photos only
                            if (rows.width.toLong() * rows.height > WAVELET_MAX_LR_PIXELS) {
                                throw IllegalArgumentException("the wavelet colour fix needs the whole image in memory: use adain for photos over ${WAVELET_MAX_LR_PIXELS / 1_000_000} MP")
                            }
                            val sr = tiler.upscale(rows.rows(0, rows.height), ColorFix.WAVELET, progress, cancelled)
                            PngWriter(stream, sr.width, sr.height).use { png -> png.writeRows(Pixels.toArgb(sr)) }
                        } else {
                            StreamedUpscale(tiler, c.scale).toPng(rows, stream, s.colorFix, app.cacheDir, progress, cancelled)
                        }
                    }
                    if (!tmp.renameTo(out)) throw IllegalStateException("could not write the result")
                    val seconds = (SystemClock.elapsedRealtime() - started) / 1000.0
                    val after = decodeSampled(out, PREVIEW_SIDE)
                    _state.update {
                        it.copy(after = after, result = out, progress = null,
                            info = "%.1f s on %s · %d×%d → %d×%d".format(seconds, m.name, rows.width, rows.height,
                                rows.width * c.scale, rows.height * c.scale))
                    }
                }
            } catch (e: CancellationException) {
                _state.update { it.copy(progress = null, info = "Cancelled") }
                throw e
            } catch (e: OutOfMemoryError) {
                _state.update { it.copy(progress = null, message = "Out of memory: try a smaller photo or another backend") }
            } catch (e: Exception) {
                _state.update { it.copy(progress = null, message = "Upscaling failed: ${e.message ?: e.javaClass.simpleName}") }
            }
        }
    }

    fun cancel() {
        job?.cancel()
    }

    fun save() = viewModelScope.launch(Dispatchers.IO) {
        val file = _state.value.result ?: return@launch
        try {
            GallerySaver.save(getApplication(), file, "adcsr_x4_${System.currentTimeMillis()}.png")
            _state.update { it.copy(message = getApplication<Application>().getString(R.string.saved)) }
        } catch (e: Exception) {
            _state.update { it.copy(message = "Saving failed: ${e.message}") }
        }
    }

    fun dismissMessage() = _state.update { it.copy(message = null) }

    override fun onCleared() {
        model?.close()
    }

    private suspend fun decodeSampled(file: File, maxSide: Int): Bitmap = withContext(Dispatchers.IO) {
        val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
        BitmapFactory.decodeFile(file.path, bounds)
        var sample = 1
        while (maxOf(bounds.outWidth, bounds.outHeight) / (sample * 2) >= maxSide) sample *= 2
        BitmapFactory.decodeFile(file.path, BitmapFactory.Options().apply { inSampleSize = sample })
    }

    companion object {
        const val PREVIEW_SIDE = 2048
        const val WAVELET_MAX_LR_PIXELS = 1_000_000L
    }
}
