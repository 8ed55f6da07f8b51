package org.adcsr.demo.ui

import androidx.activity.compose.rememberLauncherForActivityResult
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Box
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.material3.AlertDialog
import androidx.compose.material3.Button
import androidx.compose.material3.ExperimentalMaterial3Api
import androidx.compose.material3.LinearProgressIndicator
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.Scaffold
import androidx.compose.material3.Text
import androidx.compose.material3.TextButton
import androidx.compose.material3.TopAppBar
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.res.stringResource
import androidx.compose.ui.unit.dp
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import org.adcsr.demo.R
import org.adcsr.demo.UpscaleViewModel

@OptIn(ExperimentalMaterial3Api::class)
@Composable
fun AdcsrApp(vm: UpscaleViewModel) {
    val state by vm.state.collectAsStateWithLifecycle()
    var settings by remember { mutableStateOf(false) }
    val picker = rememberLauncherForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri ->
        if (uri != null) vm.pick(uri)
    }
    val pick = { picker.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly)) }

    MaterialTheme {
        Scaffold(topBar = {
            TopAppBar(title = { Text(stringResource(R.string.app_name)) }, actions = {
                TextButton(onClick = { settings = true }, enabled = state.progress == null) { Text(stringResource(R.string.settings)) }
            })
        }) { padding ->
            Column(Modifier.fillMaxSize().padding(padding).padding(12.dp), verticalArrangement = Arrangement.spacedBy(8.dp)) {
                Box(Modifier.weight(1f).fillMaxWidth(), contentAlignment = Alignment.Center) {
                    val before = state.before
                    if (before == null) {
                        Button(onClick = pick) { Text(stringResource(R.string.pick_photo)) }
                    } else {
                        BeforeAfter(before, state.after, stringResource(R.string.before), stringResource(R.string.after))
                    }
                }
                state.progress?.let { p -> LinearProgressIndicator(progress = { p }, modifier = Modifier.fillMaxWidth()) }
                state.info?.let { Text(it, style = MaterialTheme.typography.bodySmall) }
                Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
                    OutlinedButton(onClick = pick, enabled = state.progress == null) { Text(stringResource(R.string.pick_photo)) }
                    if (state.progress != null) {
                        Button(onClick = vm::cancel) { Text(stringResource(R.string.cancel)) }
                    } else {
                        Button(onClick = vm::upscale, enabled = state.photo != null && state.backendId != null) {
                            Text(stringResource(R.string.upscale))
                        }
                    }
                    OutlinedButton(onClick = { vm.save() }, enabled = state.result != null && state.progress == null) {
                        Text(stringResource(R.string.save))
                    }
                }
            }
        }
        if (settings) {
            SettingsDialog(state, onBackend = { vm.choose(it) }, onColorFix = vm::chooseColorFix, onDismiss = { settings = false })
        }
        state.message?.let { message ->
            AlertDialog(onDismissRequest = vm::dismissMessage, text = { Text(message) },
                confirmButton = { TextButton(onClick = vm::dismissMessage) { Text(stringResource(R.string.dismiss)) } })
        }
    }
}
